"""The data plane's forwarding: the pipeline after routing (`forward`), the request body
(`body`: replayable or one-shot) and the answer relayed (`deliver`)."""

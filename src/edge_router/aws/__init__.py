"""AWS, low level: boto3 clients and botocore's error mapping (`clients`), and the function URL wire
format (`function_url`). The Lambda entry point that uses them is `edge_router.aws_lambda`."""

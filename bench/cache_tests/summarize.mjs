// Not part of the upstream suite (added for edge-router's bench/cache_conformance.py):
// reads the JSON the CLI printed (test id -> true | [error name, message]) and prints, for every
// test the CLI runs (not browser_only), its suite, name, kind and the suite's own verdict
// (test-engine/lib/results.mjs determineTestResult, dependencies honoured), as a JSON array.
//
//   node summarize.mjs results.json
import fs from 'fs'
import process from 'process'

import tests from './tests/index.mjs'
import { determineTestResult, resultTypes } from './test-engine/lib/results.mjs'

const results = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))
const verdictNames = new Map(Object.entries(resultTypes).map(([name, type]) => [type, name]))
const out = []
for (const suite of tests) {
  for (const test of suite.tests) {
    if (test.browser_only === true) continue // the CLI skips these
    const raw = results[test.id]
    let verdict
    try {
      verdict = verdictNames.get(determineTestResult(tests, test.id, results)) || 'unknown'
    } catch (err) {
      verdict = `error: ${err.message}`
    }
    out.push({
      id: test.id,
      suite: suite.id,
      suite_name: suite.name,
      name: test.name,
      kind: test.kind || 'required',
      passed: raw === true,
      verdict,
      error: raw === undefined || raw === true ? null : raw[0],
      message: raw === undefined ? 'not run' : raw === true ? null : raw[1],
      depends_on: test.depends_on || []
    })
  }
}
console.log(JSON.stringify(out))

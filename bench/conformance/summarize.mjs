// Counts a suite run's results by kind: "required" (kind required or
// none), "optional" (optimal) and "check"; lists the required failures.
//   usage: node summarize.mjs SUITE_DIR RESULTS.json
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const [suiteDir, file] = process.argv.slice(2)
const { default: tests } = await import(pathToFileURL(path.join(path.resolve(suiteDir), 'tests/index.mjs')))
const results = JSON.parse(fs.readFileSync(file, 'utf8'))
const count = { required: [0, 0], optimal: [0, 0], check: [0, 0] }
const failed = []
for (const suite of tests) {
  for (const t of suite.tests) {
    if (t.browser_only === true) continue
    const kind = t.kind || 'required'
    const r = results[t.id]
    if (r === undefined) continue
    count[kind][1]++
    if (r === true) count[kind][0]++
    else if (kind === 'required') failed.push(`  ${t.id}: ${t.name}\n      ${r[1]}`)
  }
}
console.log(`required ${count.required[0]}/${count.required[1]}  optional ${count.optimal[0]}/${count.optimal[1]}  check ${count.check[0]}/${count.check[1]}`)
if (failed.length) console.log('required tests not passed:\n' + failed.join('\n'))

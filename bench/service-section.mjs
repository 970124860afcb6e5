// The reference service's section of bench/REPORT.md. `npm run bench:service`
// measures it (examples/service/bench.mjs, minutes of load on PostgreSQL) and
// keeps it in bench/SERVICE.md; both writers of REPORT.md, that script and
// bench/report.mjs, put it last in the report through this one function, so
// either can run without losing the other's part.
import { existsSync, readFileSync } from 'node:fs'

const HEADING = '## Reference service'

/** `report` (markdown) with its reference-service section replaced by `service`, or by bench/SERVICE.md when omitted. */
export function withServiceSection(report, service = readService()) {
  const at = report.indexOf(`\n${HEADING}`)
  const rest = (at === -1 ? report : report.slice(0, at + 1)).trimEnd()
  return service === undefined ? `${rest}\n` : `${rest}\n\n${service.trim()}\n`
}

function readService() {
  const file = new URL('SERVICE.md', import.meta.url)
  return existsSync(file) ? readFileSync(file, 'utf8') : undefined
}

/** Content negotiation and the OpenMetrics → Prometheus text rewrite of the metrics endpoint. */

import assert from "node:assert/strict";
import { negotiateFormat, toPrometheusText } from "./exposition.ts";

Deno.test("negotiateFormat() gives OpenMetrics only to scrapers that prefer it", () => {
  assert.equal(negotiateFormat(undefined), "prometheus");
  assert.equal(negotiateFormat("*/*"), "prometheus");
  assert.equal(negotiateFormat("text/plain"), "prometheus");
  assert.equal(negotiateFormat("application/openmetrics-text; version=1.0.0"), "openmetrics");
  assert.equal(
    negotiateFormat("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
    "openmetrics",
  );
  assert.equal(negotiateFormat("application/openmetrics-text;q=0.2, text/plain"), "prometheus");
  assert.equal(negotiateFormat("application/openmetrics-text;q=0"), "prometheus");
});

Deno.test("toPrometheusText() names counter and info families by their samples and drops # EOF", () => {
  const om = "# HELP a_hits Hits.\n# TYPE a_hits counter\na_hits_total 3\n" +
    "# HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n" +
    '# HELP a_build Build.\n# TYPE a_build info\na_build_info{v="1"} 1\n# EOF\n';
  assert.equal(
    toPrometheusText(om),
    "# HELP a_hits_total Hits.\n# TYPE a_hits_total counter\na_hits_total 3\n" +
      "# HELP a_up Up.\n# TYPE a_up gauge\na_up 1\n" +
      '# HELP a_build_info Build.\n# TYPE a_build_info gauge\na_build_info{v="1"} 1\n',
  );
});

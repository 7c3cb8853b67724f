import assert from "node:assert/strict";
import { formatBound, PrometheusText } from "./prometheus_text.ts";

Deno.test("PrometheusText: families with HELP and TYPE, labels escaped", () => {
  const text = new PrometheusText();
  text.gauge("a_bytes", "Bytes.", 12);
  text.counter("b_total", "Things.", 3, { kind: 'say "hi"\\now\n' });
  text.family("counter", "c_total", "Per x.", [[{ x: "1" }, 5], [{ x: "2" }, 0]]);
  assert.equal(
    text.render(),
    [
      "# HELP a_bytes Bytes.",
      "# TYPE a_bytes gauge",
      "a_bytes 12",
      "# HELP b_total Things.",
      "# TYPE b_total counter",
      'b_total{kind="say \\"hi\\"\\\\now\\n"} 3',
      "# HELP c_total Per x.",
      "# TYPE c_total counter",
      'c_total{x="1"} 5',
      'c_total{x="2"} 0',
      "",
    ].join("\n"),
  );
});

Deno.test("PrometheusText: a histogram's buckets are cumulative, +Inf is the count", () => {
  const text = new PrometheusText();
  text.histogram("d_seconds", "Durations.", [0.001, 0.01], [
    { labels: { op: "r" }, buckets: [2, 0, 1], sum: 0.5 },
  ]);
  assert.equal(
    text.render(),
    [
      "# HELP d_seconds Durations.",
      "# TYPE d_seconds histogram",
      'd_seconds_bucket{op="r",le="0.001"} 2',
      'd_seconds_bucket{op="r",le="0.01"} 2',
      'd_seconds_bucket{op="r",le="+Inf"} 3',
      'd_seconds_sum{op="r"} 0.5',
      'd_seconds_count{op="r"} 3',
      "",
    ].join("\n"),
  );
});

Deno.test("formatBound: the shortest decimal of a doubled bound", () => {
  assert.equal(formatBound(50e-6), "0.00005");
  assert.equal(formatBound(50e-6 * 2 ** 3), "0.0004");
  assert.equal(formatBound(0.1 + 0.2), "0.3");
  assert.equal(formatBound(3.2768), "3.2768");
});

/**
 * A writer of the Prometheus text exposition format (version 0.0.4): metric
 * families with their `# HELP` and `# TYPE` lines, samples with labels, and
 * histograms with cumulative buckets.
 *
 * @module
 */

/** The metric types this writer emits. */
export type MetricType = "counter" | "gauge";

/** Labels of one sample, e.g. `{ command: "read" }`. */
export type Labels = Record<string, string>;

/** One series of a histogram: its labels and its counts. */
export interface HistogramSeries {
  labels: Labels;
  /**
   * Observations per bucket, not cumulative: `buckets[k]` counts those within
   * bound `k` and above bound `k - 1`; one more entry counts those above every bound.
   */
  buckets: readonly number[];
  /** Sum of the observations. */
  sum: number;
}

/** Renders labels as `{a="x",b="y"}` (empty without labels), escaping values. */
function formatLabels(labels: Labels): string {
  const parts = Object.entries(labels).map(([name, value]) =>
    `${name}="${value.replace(/[\\"\n]/g, (c) => c === "\n" ? "\\n" : `\\${c}`)}"`
  );
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

/** A histogram bound as the `le` label: the shortest decimal of 6 digits, e.g. `0.0004`. */
export function formatBound(bound: number): string {
  return String(Number(bound.toPrecision(6)));
}

/**
 * Collects metric families and renders them.
 *
 * @example Usage
 * ```ts
 * import { PrometheusText } from "./prometheus_text.ts";
 * const text = new PrometheusText();
 * text.gauge("torus_ring_version", "Version of the ring in use.", 4);
 * text.family("counter", "torus_nbd_requests_total", "Requests.", [[{ command: "read" }, 7]]);
 * console.log(text.render());
 * ```
 */
export class PrometheusText {
  #lines: string[] = [];

  /** Appends a family of one sample of type `type`. */
  metric(type: MetricType, name: string, help: string, value: number, labels: Labels = {}): void {
    this.family(type, name, help, [[labels, value]]);
  }

  /** Appends a gauge of one sample. */
  gauge(name: string, help: string, value: number, labels: Labels = {}): void {
    this.metric("gauge", name, help, value, labels);
  }

  /** Appends a counter of one sample. */
  counter(name: string, help: string, value: number, labels: Labels = {}): void {
    this.metric("counter", name, help, value, labels);
  }

  /** Appends a family with a sample per entry of `samples`. */
  family(
    type: MetricType,
    name: string,
    help: string,
    samples: Iterable<readonly [Labels, number]>,
  ): void {
    this.#lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) {
      this.#lines.push(`${name}${formatLabels(labels)} ${value}`);
    }
  }

  /**
   * Appends a histogram: for each series, cumulative `_bucket` samples at
   * every bound of `bounds` and at `+Inf`, then `_sum` and `_count`.
   */
  histogram(
    name: string,
    help: string,
    bounds: readonly number[],
    series: Iterable<HistogramSeries>,
  ): void {
    this.#lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
    for (const { labels, buckets, sum } of series) {
      let cumulative = 0;
      bounds.forEach((bound, index) => {
        cumulative += buckets[index]!;
        const le = formatLabels({ ...labels, le: formatBound(bound) });
        this.#lines.push(`${name}_bucket${le} ${cumulative}`);
      });
      cumulative += buckets[bounds.length]!;
      this.#lines.push(
        `${name}_bucket${formatLabels({ ...labels, le: "+Inf" })} ${cumulative}`,
        `${name}_sum${formatLabels(labels)} ${sum}`,
        `${name}_count${formatLabels(labels)} ${cumulative}`,
      );
    }
  }

  /** The families appended so far, one line each, ending with a newline. */
  render(): string {
    return this.#lines.join("\n") + "\n";
  }
}

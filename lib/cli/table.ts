/**
 * Output of listing commands: aligned tables like the original's tabwriter
 * (uppercase headers, two spaces of padding), CSV rows without a header, or
 * JSON.
 *
 * @module
 */

/** How a listing is printed. */
export type OutputFormat = "table" | "csv" | "json";

/** Parses `--output`. @throws {SyntaxError} */
export function parseOutputFormat(text: string): OutputFormat {
  if (text === "table" || text === "csv" || text === "json") return text;
  throw new SyntaxError(`Cannot use --output "${text}": expected table, csv or json`);
}

/**
 * Renders rows as an aligned table.
 *
 * @example Usage
 * ```ts
 * import { renderTable } from "./table.ts";
 * const text = renderTable(["name", "size"], [["vol1", "1 GiB"]]);
 * if (!text.startsWith("NAME  SIZE")) throw new Error(text);
 * ```
 */
export function renderTable(headers: string[], rows: string[][]): string {
  const all = [headers.map((h) => h.toUpperCase()), ...rows];
  const widths = headers.map((_, column) =>
    Math.max(5, ...all.map((row) => (row[column] ?? "").length))
  );
  return all.map((row) =>
    row.map((cell, column) => column === row.length - 1 ? cell : cell.padEnd(widths[column]! + 2))
      .join("").trimEnd()
  ).join("\n");
}

/** Renders rows as CSV (quoted where needed), without a header, as the original's `--csv`. */
export function renderCsv(rows: string[][]): string {
  return rows.map((row) =>
    row.map((cell) => /[",\n]/.test(cell) ? `"${cell.replaceAll('"', '""')}"` : cell).join(",")
  ).join("\n");
}

/** Renders `records` in `format`; `columns` picks and orders table/CSV columns. */
export function renderListing<T extends object>(
  format: OutputFormat,
  records: T[],
  columns: { header: string; value: (record: T) => string }[],
): string {
  if (format === "json") return JSON.stringify(records, null, 2);
  const rows = records.map((record) => columns.map((column) => column.value(record)));
  return format === "csv" ? renderCsv(rows) : renderTable(columns.map((c) => c.header), rows);
}

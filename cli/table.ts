// Tables that fit the terminal: fixed columns keep their width, the one `flex` column
// takes what is left and is cut with an ellipsis. Plain text, no colours, so output
// stays readable when piped.

export interface Column<Row> {
  header: string;
  value: (row: Row) => string;
  align?: 'left' | 'right';
  /** At most this wide (cut with …). */
  max?: number;
  /** Takes the remaining width; at most one column. */
  flex?: boolean;
}

const GAP = 2;

export function renderTable<Row>(rows: readonly Row[], columns: readonly Column<Row>[], width = terminalWidth()): string {
  const cells = rows.map((r) => columns.map((c) => clean(c.value(r))));
  const widths = columns.map((c, i) => {
    let w = c.header.length;
    for (const row of cells) w = Math.max(w, row[i]!.length);
    return c.max === undefined ? w : Math.min(w, c.max);
  });
  const flex = columns.findIndex((c) => c.flex);
  if (flex >= 0) {
    const fixed = widths.reduce((a, w, i) => (i === flex ? a : a + w), 0) + GAP * (columns.length - 1);
    widths[flex] = Math.max(columns[flex]!.header.length, Math.min(widths[flex]!, width - fixed));
  }
  const line = (vals: string[]): string =>
    vals
      .map((v, i) => {
        const w = widths[i]!;
        const s = v.length > w ? `${v.slice(0, Math.max(0, w - 1))}…` : v;
        return columns[i]!.align === 'right' ? s.padStart(w) : s.padEnd(w);
      })
      .join(' '.repeat(GAP))
      .trimEnd();
  return [line(columns.map((c) => c.header)), ...cells.map(line)].join('\n') + '\n';
}

export function terminalWidth(): number {
  const cols = process.stdout.columns;
  return cols && cols > 40 ? cols : 160;
}

/** Human byte counts: 1.2 KiB, 3.4 MiB. */
export function humanBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = -1;
  do {
    v /= 1024;
    u++;
  } while (v >= 1024 && u < units.length - 1);
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

// Wire-derived strings (SNI, banners) could hold control characters: never let them
// move the cursor or break the table.
function clean(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}

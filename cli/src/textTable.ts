// A table for people: a header row, columns padded to their widest cell, two spaces between
// them, the last column unpadded. Cells lose control characters, so a value from the gateway
// cannot move the cursor or forge a line.
export function textTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const clean = (cell: string): string => cell.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  const all = [header, ...rows].map((r) => r.map(clean));
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

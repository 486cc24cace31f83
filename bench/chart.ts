// A bar chart of a bench run as a stand-alone SVG (no dependencies): one
// panel per measure (Gbit/s, CPU-s per Gbit, Mpps), one bar per path or
// stage, the value printed beside it; a row without a value (a skipped or
// failed peer) is drawn as a note instead of a bar.

export interface Bar {
  label: string;
  /** Undefined: no bar, `note` instead. */
  value?: number;
  note?: string;
  /** Draw it in the highlight colour (overlayd's rows). */
  ours?: boolean;
}

export interface Panel {
  title: string;
  unit: string;
  bars: Bar[];
  /** Digits after the point in the printed values. */
  digits?: number;
}

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");

const WIDTH = 960;
const LABEL_W = 360;
const BAR_W = 440;
const ROW_H = 22;
const PANEL_GAP = 46;

/** The SVG text of `panels` under `title` (a subtitle line: `sub`). */
export function barChartSvg(title: string, sub: string, panels: Panel[]): string {
  const out: string[] = [];
  let y = 56;
  for (const p of panels) {
    out.push(`<text x="10" y="${y}" font-weight="bold">${esc(p.title)} (${esc(p.unit)})</text>`);
    y += 10;
    const max = Math.max(0, ...p.bars.map((b) => (b.value !== undefined && Number.isFinite(b.value) ? b.value : 0)));
    for (const b of p.bars) {
      const mid = y + ROW_H / 2 + 4;
      out.push(`<text x="${LABEL_W - 8}" y="${mid}" text-anchor="end">${esc(b.label)}</text>`);
      if (b.value === undefined || !Number.isFinite(b.value)) {
        out.push(`<text x="${LABEL_W}" y="${mid}" fill="#777" font-style="italic">${esc(b.note ?? "no value")}</text>`);
      } else {
        const w = max > 0 ? Math.max(1, Math.round((b.value / max) * BAR_W)) : 1;
        out.push(`<rect x="${LABEL_W}" y="${y + 3}" width="${w}" height="${ROW_H - 6}" fill="${b.ours ? "#2a7ab9" : "#9aa5b1"}"/>`);
        out.push(`<text x="${LABEL_W + w + 6}" y="${mid}">${b.value.toFixed(p.digits ?? 2)}${b.note ? ` ${esc(b.note)}` : ""}</text>`);
      }
      y += ROW_H;
    }
    y += PANEL_GAP - 10;
  }
  const height = y;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="13">`,
    `<rect width="${WIDTH}" height="${height}" fill="white"/>`,
    `<text x="10" y="22" font-size="16" font-weight="bold">${esc(title)}</text>`,
    `<text x="10" y="40" fill="#555">${esc(sub)}</text>`,
    ...out,
    "</svg>",
    "",
  ].join("\n");
}

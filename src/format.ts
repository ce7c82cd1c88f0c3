/** How long something takes, for people: "7.5s", "42s", "3m05s", "2h07m"; "?" if unknown. */
export function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  if (seconds < 10) return `${seconds.toFixed(1)}s`;
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h
    ? `${h}h${String(m).padStart(2, "0")}m`
    : m
    ? `${m}m${String(s % 60).padStart(2, "0")}s`
    : `${s}s`;
}

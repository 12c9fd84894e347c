// Builds the one JSON line a run prints, in the shape the Rust bench reads.

/** Flattens options to `a=1 b.c=2`, so `settings` always shows what was really passed. */
export function describe(options, prefix = "") {
  return Object.entries(options)
    .map(([key, value]) =>
      value !== null && typeof value === "object"
        ? describe(value, `${prefix}${key}.`)
        : `${prefix}${key}=${value}`,
    )
    .join(" ");
}

export function reportLine({ system, workload, tasks, concurrency, seconds, p50_ms = null, p99_ms = null, settings }) {
  return JSON.stringify({
    system,
    workload,
    tasks,
    concurrency,
    seconds: Number(seconds.toFixed(2)),
    tasks_per_s: Math.round(tasks / seconds),
    p50_ms,
    p99_ms,
    settings,
  });
}

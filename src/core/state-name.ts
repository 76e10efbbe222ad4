/**
 * Flattens a state value ({ active: 'running' }) to 'active.running' (parallel regions joined by
 * ',', in name order: a value that went through a key-sorting serializer, as the inspector's
 * does, names the same state the same way).
 */
export function stateName(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object') {
    return Object.entries(value)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([k, v]) => `${k}.${stateName(v)}`)
      .join(',');
  }
  return String(value);
}

/** Parsed JSON in tests: narrowed from unknown before its fields are read. */

/** `v` when it is a JSON object (its fields unknown); throws otherwise. */
export function jsonObject(v: unknown): { [field: string]: unknown } {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object: ' + JSON.stringify(v));
  return { ...v };
}

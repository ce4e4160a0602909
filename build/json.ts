/**
 * JSON files the build reads (package.json files, boards/<board>/board.json): parsed as `unknown`
 * and narrowed where a field is used, so a file of an unexpected shape is reported, not trusted.
 */
import { readFileSync } from 'node:fs';

/** The parsed contents of a JSON file. */
export function readJson(file: string): unknown {
  return JSON.parse(readFileSync(file, 'utf8'));
}

/** True for an object that is neither null nor an array (a JSON object): its fields can be read by name. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

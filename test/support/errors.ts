/** The E4 result code `fn` throws (an E4Error), 0 when it returns; anything else is rethrown. */
import { isE4Error } from '../../firmware/errors';

export function codeOf(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    if (isE4Error(e)) return e.code;
    throw e;
  }
  return 0;
}

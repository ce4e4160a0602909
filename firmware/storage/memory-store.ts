/**
 * A Store in RAM: state is lost at reset. The default when a HAL brings no store, and the model
 * the durable stores are tested against. `failNext` lets tests make the next commit fail.
 */
import type { Change, Store, StoredState } from '../hal';
import { applyChanges, cloneState, wipeState } from '../state';

export interface MemoryStore extends Store {
  /** Number of commits made (for tests and benchmarks). */
  commits: number;
  /** When set, the next commit throws this error and changes nothing (fault injection). */
  failNext: Error | null;
}

export function memoryStore(initial?: StoredState | null): MemoryStore {
  var current: StoredState | null = initial ? cloneState(initial) : null;
  var store: MemoryStore = {
    commits: 0,
    failNext: null,
    load: function () {
      return current ? cloneState(current) : null;
    },
    commit: function (changes: Change[]) {
      if (store.failNext) {
        var e = store.failNext;
        store.failNext = null;
        throw e;
      }
      // Apply to a copy, then swap: a change that cannot apply leaves the old state whole.
      var next = applyChanges(current ? cloneState(current) : null, changes);
      wipeState(current);
      current = next;
      store.commits++;
    },
  };
  return store;
}

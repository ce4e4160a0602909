import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60000,
    hookTimeout: 60000,
    // Engines and servers are real processes: keep the 2-core CI machine from oversubscribing.
    maxWorkers: 2,
  },
});

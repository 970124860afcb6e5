import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Child processes, not worker threads: a test that terminates workers or
    // checks that a process exits must not share a thread with the runner.
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 120_000,
  },
})

import { runCli } from './program.js';

// The CLI's own settings; the server's configuration is @infer/config's business, not this.
const code = await runCli(
  process.argv.slice(2),
  { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin },
  { url: process.env.INFER_URL, apiKey: process.env.INFER_API_KEY, adminKey: process.env.INFER_ADMIN_KEY },
);
process.exitCode = code;

import { runCli } from './program.js';

// `infer batch results <id> | head`: the reader has what it wanted and closed the pipe. Stop quietly, as Unix tools do.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});

// `npm run cli -- batch submit rows.ndjson` runs this from the repository's root, wherever it was typed:
// files named on the command line are the caller's, so work from where npm was run (INIT_CWD).
if (process.env.npm_lifecycle_event === 'cli' && process.env.INIT_CWD) process.chdir(process.env.INIT_CWD);

// The CLI's own settings; the server's configuration is @infer/config's business, not this.
const code = await runCli(
  process.argv.slice(2),
  { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin },
  { url: process.env.INFER_URL, apiKey: process.env.INFER_API_KEY, adminKey: process.env.INFER_ADMIN_KEY },
);
process.exitCode = code;

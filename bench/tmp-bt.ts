import { runBatchesBench } from './sections/batches.js';
const figures = await runBatchesBench({ rows: 100_000, fairnessRows: 20_000, memoryRows: 20_000 });
process.exit(0);

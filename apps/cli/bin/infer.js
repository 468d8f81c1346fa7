#!/usr/bin/env node
// The CLI runs from its TypeScript source, like the rest of the repository (no build step).
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');

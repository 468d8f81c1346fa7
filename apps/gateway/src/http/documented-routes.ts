import { paths } from '../openapi/paths.js';

const METHODS = ['get', 'put', 'post', 'delete', 'patch'] as const;

/** Each documented path as a pattern Express would match (any letter case, an optional trailing slash), with its methods. */
const routes: ReadonlyArray<{ pattern: RegExp; methods: ReadonlySet<string> }> = Object.entries(paths).map(([template, operations]) => ({
  pattern: new RegExp(`^${template.replace(/[.*+?^$()|[\]\\]/g, '\\$&').replace(/\{[^}]+\}/g, '[^/]+')}/?$`, 'i'),
  methods: new Set(METHODS.filter((m) => typeof operations === 'object' && operations !== null && m in operations).map((m) => m.toUpperCase())),
}));

/**
 * Whether the OpenAPI document (the contract's machine-readable truth)
 * serves `method` on `path` (a request's path, no query). HEAD counts as GET,
 * as Express answers it.
 */
export function isDocumentedRoute(method: string, path: string): boolean {
  const m = method === 'HEAD' ? 'GET' : method;
  return routes.some((r) => r.methods.has(m) && r.pattern.test(path));
}

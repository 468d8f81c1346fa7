import { AppError, type ErrorCode, type ProblemStatus } from './app-error.js';

/** RFC 9457 problem details, with the platform's stable `code`. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
}

/**
 * The `title` of a problem with each status: its reason phrase as RFC 9110
 * names it (413 "Content Too Large", 422 "Unprocessable Content"). Keyed by
 * ProblemStatus, the only statuses an AppError takes: a status without a
 * title does not compile.
 */
export const PROBLEM_TITLES: Readonly<Record<ProblemStatus, string>> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  408: 'Request Timeout',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** Where each code is documented; a stable URI per code, as RFC 9457 suggests. */
export const PROBLEM_TYPE_BASE = 'https://infer.dev/problems/';

export function toProblem(err: AppError): Problem {
  return {
    type: PROBLEM_TYPE_BASE + err.code.replaceAll('_', '-'),
    title: PROBLEM_TITLES[err.status],
    status: err.status,
    detail: err.message,
    code: err.code,
  };
}

/** The body for an error we did not expect: no message, no stack. */
export function internalProblem(): Problem {
  return {
    type: PROBLEM_TYPE_BASE + 'internal-error',
    title: PROBLEM_TITLES[500],
    status: 500,
    detail: 'An internal error occurred. It has been logged.',
    code: 'internal_error',
  };
}

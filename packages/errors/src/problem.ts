import { AppError, type ErrorCode } from './app-error.js';

/** RFC 9457 problem details, with the platform's stable `code`. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
}

/** The `title` of a problem with each status: the HTTP reason phrase. */
export const PROBLEM_TITLES: Readonly<Record<number, string>> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  409: 'Conflict',
  413: 'Payload Too Large',
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
    title: PROBLEM_TITLES[err.status] ?? 'Error',
    status: err.status,
    detail: err.message,
    code: err.code,
  };
}

/** The body for an error we did not expect: no message, no stack. */
export function internalProblem(): Problem {
  return {
    type: PROBLEM_TYPE_BASE + 'internal-error',
    title: PROBLEM_TITLES[500]!,
    status: 500,
    detail: 'An internal error occurred. It has been logged.',
    code: 'internal_error',
  };
}

/** A tensor as a nested JSON array; a scalar is a bare number (or boolean for BOOL). */
export type NestedArray = number | boolean | NestedArray[];

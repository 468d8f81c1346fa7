/** A tensor as a nested JSON array; a scalar is a bare number (or boolean for BOOL). */
export type NestedArray = number | boolean | NestedArray[];

/**
 * An output tensor as a nested JSON array: as NestedArray, and null where
 * the model computed NaN or ±Infinity, which JSON cannot carry (inputs
 * never hold those: they are refused).
 */
export type OutputArray = number | boolean | null | OutputArray[];

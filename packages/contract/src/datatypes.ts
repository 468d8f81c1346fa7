/**
 * Tensor datatypes, named as in the Open Inference Protocol (KServe v2),
 * with the facts the rest of the platform needs about each one.
 */
export const DATATYPES = [
  'BOOL',
  'UINT8',
  'UINT16',
  'UINT32',
  'UINT64',
  'INT8',
  'INT16',
  'INT32',
  'INT64',
  'FP16',
  'FP32',
  'FP64',
  'BYTES',
] as const;

export type Datatype = (typeof DATATYPES)[number];

/** ONNX Runtime's tensor type names, as `InferenceSession.inputMetadata` reports them. */
export type OrtTensorType =
  | 'bool'
  | 'uint8'
  | 'uint16'
  | 'uint32'
  | 'uint64'
  | 'int8'
  | 'int16'
  | 'int32'
  | 'int64'
  | 'float16'
  | 'float32'
  | 'float64'
  | 'string';

export const ORT_TYPE_OF: Record<Datatype, OrtTensorType> = {
  BOOL: 'bool',
  UINT8: 'uint8',
  UINT16: 'uint16',
  UINT32: 'uint32',
  UINT64: 'uint64',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  FP16: 'float16',
  FP32: 'float32',
  FP64: 'float64',
  BYTES: 'string',
};

export const DATATYPE_OF_ORT: Record<OrtTensorType, Datatype> = Object.fromEntries(
  Object.entries(ORT_TYPE_OF).map(([dt, ort]) => [ort, dt]),
) as Record<OrtTensorType, Datatype>;

/** Bytes per element in the little-endian `b64` form; BYTES has no fixed width. */
export const BYTES_PER_ELEMENT: Record<Datatype, number> = {
  BOOL: 1,
  UINT8: 1,
  UINT16: 2,
  UINT32: 4,
  UINT64: 8,
  INT8: 1,
  INT16: 2,
  INT32: 4,
  INT64: 8,
  FP16: 2,
  FP32: 4,
  FP64: 8,
  BYTES: 0,
};

export function isDatatype(value: unknown): value is Datatype {
  return typeof value === 'string' && (DATATYPES as readonly string[]).includes(value);
}

export function isFloatDatatype(dt: Datatype): boolean {
  return dt === 'FP16' || dt === 'FP32' || dt === 'FP64';
}

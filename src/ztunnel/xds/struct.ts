// google.protobuf.Struct as protobufjs's built-in definition names its fields (camelCase: the
// well-known types under google/protobuf/ are served from protobufjs itself, whatever
// proto/ holds), for node metadata and the CA request's ImpersonatedIdentity.

export interface StructValue {
  readonly nullValue?: "NULL_VALUE";
  readonly numberValue?: number;
  readonly stringValue?: string;
  readonly boolValue?: boolean;
  readonly structValue?: StructObject;
  readonly listValue?: { readonly values: readonly StructValue[] };
}

export interface StructObject {
  readonly fields: Readonly<Record<string, StructValue>>;
}

/** A Struct whose values are all strings (the only kind we send). */
export function stringStruct(values: Readonly<Record<string, string>>): StructObject {
  const fields: Record<string, StructValue> = {};
  for (const [k, v] of Object.entries(values)) fields[k] = { stringValue: v };
  return { fields };
}

/** String fields of a decoded Struct; other kinds are skipped. */
export function structStrings(s: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof s !== "object" || s === null) return out;
  const fields = (s as { fields?: unknown }).fields;
  if (typeof fields !== "object" || fields === null) return out;
  for (const [k, v] of Object.entries(fields)) {
    const str = (v as { stringValue?: unknown } | null)?.stringValue;
    if (typeof str === "string") out[k] = str;
  }
  return out;
}

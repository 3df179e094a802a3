// @peculiar/x509 uses tsyringe, which refuses to load unless the Reflect metadata API exists
// (normally the reflect-metadata package, not a dependency of ours). tsyringe only needs
// define/get/getOwn metadata, so a WeakMap-backed subset is installed here, before x509 loads.

type MetaMap = Map<unknown, unknown>;
const store = new WeakMap<object, MetaMap>();

interface ReflectMetadata {
  defineMetadata(key: unknown, value: unknown, target: object): void;
  getOwnMetadata(key: unknown, target: object): unknown;
  getMetadata(key: unknown, target: object): unknown;
  metadata(key: unknown, value: unknown): (target: object) => void;
}

const reflect = Reflect as unknown as Partial<ReflectMetadata>;

if (typeof reflect.getMetadata !== "function") {
  const own = (key: unknown, target: object): unknown => store.get(target)?.get(key);
  const define = (key: unknown, value: unknown, target: object): void => {
    let m = store.get(target);
    if (m === undefined) {
      m = new Map();
      store.set(target, m);
    }
    m.set(key, value);
  };
  Object.assign(Reflect, {
    defineMetadata: define,
    getOwnMetadata: own,
    getMetadata(key: unknown, target: object): unknown {
      // Walk the prototype chain like reflect-metadata does.
      for (let t: object | null = target; t !== null; t = Object.getPrototypeOf(t) as object | null) {
        const v = own(key, t);
        if (v !== undefined) return v;
      }
      return undefined;
    },
    metadata: (key: unknown, value: unknown) => (target: object) => define(key, value, target),
  } satisfies ReflectMetadata);
}

export {};

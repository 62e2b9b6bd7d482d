// Validates KEDA objects against the schema of KEDA's CRDs that @kubernetes-models/keda carries
// (generated from KEDA's API types, compiled to validators). Reads a JSON array of objects on
// stdin; prints a JSON array of {kind, name, errors}, one per object, and exits 0.
//
// The CRD schema does not reject unknown fields (the API server prunes them), so this also holds
// the fields people mistype (spec, triggers, scaleTargetRef, advanced, authenticationRef,
// secretTargetRef) to the properties the package's type declarations name.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

const require = createRequire(import.meta.url);
const root = dirname(require.resolve("@kubernetes-models/keda/package.json"));
const models = {
  ScaledObject: "keda.sh/v1alpha1/ScaledObject.js",
  ScaledJob: "keda.sh/v1alpha1/ScaledJob.js",
  TriggerAuthentication: "keda.sh/v1alpha1/TriggerAuthentication.js",
  ClusterTriggerAuthentication: "keda.sh/v1alpha1/ClusterTriggerAuthentication.js",
};

function known(declaration) {
  // The quoted property names of the first interface in a .d.ts file.
  const text = readFileSync(join(root, "keda.sh/v1alpha1", declaration), "utf8");
  const body = text.slice(text.indexOf("export interface"), text.indexOf("}\n"));
  return new Set([...body.matchAll(/^\s+"([^"]+)"\??:/gm)].map((m) => m[1]));
}

function unknown(value, declaration, path, found) {
  if (value === undefined || value === null) return;
  const allowed = known(declaration);
  if (allowed.size === 0) throw new Error(`${declaration} declares no properties: read it anew`);
  for (const key of Object.keys(value)) {
    if (!allowed.has(key)) found.push(`${path}/${key} is not a field of ${declaration}`);
  }
}

function strict(object) {
  const found = [];
  const spec = object.spec ?? {};
  if (object.kind === "ScaledObject") {
    unknown(spec, "ScaledObjectSpec.d.ts", "data/spec", found);
    unknown(spec.scaleTargetRef, "ScaleTarget.d.ts", "data/spec/scaleTargetRef", found);
    unknown(spec.advanced, "AdvancedConfig.d.ts", "data/spec/advanced", found);
    (spec.triggers ?? []).forEach((trigger, i) => {
      unknown(trigger, "ScaleTriggers.d.ts", `data/spec/triggers/${i}`, found);
      unknown(trigger.authenticationRef, "AuthenticationRef.d.ts",
        `data/spec/triggers/${i}/authenticationRef`, found);
    });
  }
  if (object.kind === "TriggerAuthentication" || object.kind === "ClusterTriggerAuthentication") {
    unknown(spec, "TriggerAuthenticationSpec.d.ts", "data/spec", found);
    (spec.secretTargetRef ?? []).forEach((ref, i) => {
      unknown(ref, "AuthTargetRef.d.ts", `data/spec/secretTargetRef/${i}`, found);
    });
  }
  return found;
}

const objects = JSON.parse(readFileSync(0, "utf8"));
const results = [];
for (const object of objects) {
  const name = object.metadata?.name ?? "";
  const model = models[object.kind];
  if (object.apiVersion !== "keda.sh/v1alpha1" || model === undefined) {
    results.push({ kind: object.kind, name, errors: [`not a KEDA kind: ${object.apiVersion} ${object.kind}`] });
    continue;
  }
  const { [object.kind]: Model } = await import(join(root, model));
  const errors = [];
  try {
    new Model(object).validate();
  } catch (error) {
    errors.push(error.message);
  }
  results.push({ kind: object.kind, name, errors: errors.concat(strict(object)) });
}
process.stdout.write(JSON.stringify(results));

// Validates prometheus-operator resources (PrometheusRule, ServiceMonitor, PodMonitor) against
// the CRD schemas shipped in @kubernetes-models/prometheus-operator. Used by tests/helm.rs:
//   node validate_crds.mjs MODULE_DIR RESOURCES.json
// MODULE_DIR is .../node_modules/@kubernetes-models/prometheus-operator; RESOURCES.json holds an
// array of objects. Prints one line per resource; exits 1 if any fails (or has an unknown kind).
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const [moduleDir, resourcesPath] = process.argv.slice(2);
const models = await import(pathToFileURL(join(moduleDir, "monitoring.coreos.com/v1/index.js")).href);
let failed = 0;
for (const resource of JSON.parse(readFileSync(resourcesPath, "utf8"))) {
  const name = `${resource.kind}/${resource.metadata?.name}`;
  const Model = resource.apiVersion === "monitoring.coreos.com/v1" ? models[resource.kind] : undefined;
  if (!Model) {
    console.log(`FAIL ${name}: no schema for ${resource.apiVersion} ${resource.kind}`);
    failed++;
    continue;
  }
  try {
    new Model(resource).validate();
    console.log(`ok ${name}`);
  } catch (error) {
    console.log(`FAIL ${name}: ${error.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);

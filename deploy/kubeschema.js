// Validates Kubernetes objects against the Kubernetes API's schemas with the npm package
// kubernetes-models (installed by deploy/kubeschema.sh): the types, formats and required fields
// of every object, offline. TestKubernetesManifests runs it.
//
//   node deploy/kubeschema.js "$(bash deploy/kubeschema.sh)" <objects.json
//
// Reads [{"name": "...", "object": {...}}, ...] on stdin and writes
// [{"name": "...", "errors": ["<JSON pointer>: <message>", ...]}, ...] on stdout, one entry per
// object in the same order; an object whose apiVersion and kind have no schema has an error
// saying so. Exits 1 only when it could not run.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { createRequire } = require('node:module');

const dir = process.argv[2];
if (!dir) {
	process.stderr.write('usage: node kubeschema.js <kubernetes-models install directory> <objects.json\n');
	process.exit(1);
}
const requireModel = createRequire(path.join(dir, 'package.json'));

// model returns the class of apiVersion and kind: "apps/v1" is kubernetes-models/apps/v1, the
// core group's "v1" is kubernetes-models/v1.
function model(apiVersion, kind) {
	let group;
	try {
		group = requireModel(`kubernetes-models/${apiVersion}`);
	} catch {
		return undefined;
	}
	return typeof group[kind] === 'function' ? group[kind] : undefined;
}

const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const output = input.map(({ name, object }) => {
	const Model = model(String(object.apiVersion), String(object.kind));
	if (!Model) {
		return { name, errors: [`: no schema for apiVersion ${object.apiVersion} kind ${object.kind}`] };
	}
	try {
		new Model(object).validate();
		return { name, errors: [] };
	} catch (err) {
		if (!Array.isArray(err.errors)) {
			throw err;
		}
		return { name, errors: err.errors.map((e) => `${e.instancePath}: ${e.message}`) };
	}
});
process.stdout.write(JSON.stringify(output) + '\n');

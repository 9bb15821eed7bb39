#!/usr/bin/env node
// Compiles eth-adapter/contracts/**/*.sol with the pinned solcjs (npm `solc`, see package.json)
// through standard JSON and writes one artifact per contract to eth-adapter/contracts/out/.
//
//   node scripts/compile-contracts.js          # (re)write the artifacts
//   node scripts/compile-contracts.js --check  # recompile; exit 1 if a committed artifact differs
//
// The artifacts are committed: the Rust bindings (`sol!`) are generated from them, so the
// contract the adapter deploys is exactly the one reviewed here.
'use strict';

const fs = require('fs');
const path = require('path');
const solc = require('solc');

const EXPECTED_SOLC = '0.8.33';
const ROOT = path.resolve(__dirname, '..', 'eth-adapter');
const SRC_DIR = path.join(ROOT, 'contracts');
const OUT_DIR = path.join(SRC_DIR, 'out');

// Recorded verbatim in every artifact.
const SETTINGS = {
  evmVersion: 'cancun',
  viaIR: true,
  optimizer: { enabled: true, runs: 1000000 },
  metadata: { bytecodeHash: 'none' },
  outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
};

function listSources(dir) {
  const found = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      if (entry.name !== 'out') found.push(...listSources(full));
    } else if (entry.name.endsWith('.sol')) {
      found.push(full);
    }
  }
  return found;
}

function compile() {
  const version = solc.version();
  if (!version.startsWith(EXPECTED_SOLC + '+')) {
    throw new Error(`solc ${version} found, ${EXPECTED_SOLC} required: run \`npm ci\``);
  }
  const sources = {};
  for (const file of listSources(SRC_DIR)) {
    const key = path.relative(ROOT, file).split(path.sep).join('/');
    sources[key] = { content: fs.readFileSync(file, 'utf8') };
  }
  const input = { language: 'Solidity', sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors || []).filter((e) => e.severity === 'error');
  for (const e of output.errors || []) process.stderr.write(e.formattedMessage + '\n');
  if (errors.length > 0) throw new Error(`${errors.length} compilation error(s)`);

  const artifacts = {};
  for (const [source, contracts] of Object.entries(output.contracts)) {
    for (const [name, c] of Object.entries(contracts)) {
      if (c.evm.bytecode.object.length === 0) continue; // interfaces
      const rel = source.startsWith('contracts/test/') ? `test/${name}.json` : `${name}.json`;
      const artifact = {
        contractName: name,
        sourceName: source,
        compiler: { name: 'solc', version, settings: SETTINGS },
        abi: c.abi,
        bytecode: '0x' + c.evm.bytecode.object,
        deployedBytecode: '0x' + c.evm.deployedBytecode.object,
      };
      artifacts[rel] = JSON.stringify(artifact, null, 2) + '\n';
    }
  }
  return artifacts;
}

function main() {
  const check = process.argv.includes('--check');
  const artifacts = compile();
  let differ = 0;
  for (const [rel, text] of Object.entries(artifacts).sort()) {
    const file = path.join(OUT_DIR, rel);
    const old = fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : null;
    if (old === text) continue;
    if (check) {
      process.stderr.write(`${path.relative(process.cwd(), file)} is out of date\n`);
      differ++;
    } else {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, text);
      process.stdout.write(`wrote ${path.relative(process.cwd(), file)}\n`);
    }
  }
  if (check) {
    // Artifacts whose contract no longer exists are stale too.
    const walk = (d) => fs.existsSync(d) ? fs.readdirSync(d, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(path.join(d, e.name)) : [path.join(d, e.name)]) : [];
    for (const file of walk(OUT_DIR)) {
      const rel = path.relative(OUT_DIR, file).split(path.sep).join('/');
      if (rel.endsWith('.json') && !(rel in artifacts)) {
        process.stderr.write(`${rel} has no source contract\n`);
        differ++;
      }
    }
    if (differ > 0) {
      process.stderr.write('run `node scripts/compile-contracts.js` and commit the result\n');
      process.exit(1);
    }
    process.stdout.write('contract artifacts are up to date\n');
  }
}

try {
  main();
} catch (e) {
  process.stderr.write(`compile-contracts: ${e.message}\n`);
  process.exit(2);
}

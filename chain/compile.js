// Compiles TestUSDT.sol with solcjs (bundled in the npm package, so nothing is downloaded) into
// build/TestUSDT.json: the ABI and creation bytecode the test suite and `juhe chain` deploy.
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const source = fs.readFileSync(path.join(__dirname, "TestUSDT.sol"), "utf8");
const input = {
  language: "Solidity",
  sources: { "TestUSDT.sol": { content: source } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  for (const e of errors) console.error(e.formattedMessage);
  process.exit(1);
}
const contract = output.contracts["TestUSDT.sol"].TestUSDT;
fs.mkdirSync(path.join(__dirname, "build"), { recursive: true });
fs.writeFileSync(
  path.join(__dirname, "build", "TestUSDT.json"),
  JSON.stringify({ abi: contract.abi, bytecode: "0x" + contract.evm.bytecode.object }),
);
console.log(`compiled TestUSDT with solc ${solc.version()}`);

/**
 * Jest reporter that ends the run with one plain line, "jest: N passed, N failed[, N skipped]",
 * the closing line CI reads for runners it does not know by name.
 */
class SummaryReporter {
  onRunComplete(_contexts, results) {
    const skipped = results.numPendingTests + results.numTodoTests;
    const failed = results.numFailedTests + results.numRuntimeErrorTestSuites;
    const line = `jest: ${results.numPassedTests} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}\n`;
    // after jest's own closing lines ("Ran all test suites"), so it is the last line of the run
    process.once('exit', () => process.stderr.write(line));
  }
}
module.exports = SummaryReporter;

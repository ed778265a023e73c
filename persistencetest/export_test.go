package persistencetest

// Copies is copies, for the tests of package persistencetest_test.
const Copies = copies

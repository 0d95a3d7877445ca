/** Jest global teardown (placeholder until the ZFS test pool harness lands). */
export default async function globalTeardown(): Promise<void> {}

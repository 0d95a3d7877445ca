/** Jest global setup (placeholder until the ZFS test pool harness lands). */
export default async function globalSetup(): Promise<void> {}

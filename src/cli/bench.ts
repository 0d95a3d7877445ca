/** `npm run bench` entry (placeholder). */
console.log('no benchmarks yet');

// The limit Node services share today without sluice: a coordinator that
// owns the count and hands out permits over messages, first come first
// served. `endpoints` are Workers (postMessage) or cluster workers (send);
// each sends 'acquire' and 'release' and is answered 'grant'.
export function coordinate(endpoints, permits, send) {
  let free = permits
  const queue = []
  for (const endpoint of endpoints) {
    endpoint.on('message', (message) => {
      if (message === 'acquire') {
        if (free > 0) {
          free--
          send(endpoint, 'grant')
        } else {
          queue.push(endpoint)
        }
      } else if (message === 'release') {
        const next = queue.shift()
        if (next) send(next, 'grant')
        else free++
      }
    })
  }
}

/**
 * The connections still in their port 5000 handshake, by source address, with
 * the eviction rule that keeps one address from crowding out the others.
 * @module
 */

/**
 * Pending handshakes, oldest first, capped per address and in all. Adding one
 * beyond a cap evicts an older unauthenticated one instead of refusing the
 * newcomer: the newcomer's address's oldest when that address is at its own
 * cap, else the oldest of the address holding the most. An address under its
 * share is thus never the one to lose a connection while another holds more.
 */
export class PendingSet<T> {
  #max: number;
  #perAddress: number;
  #byAddress = new Map<string, Set<T>>();
  #addressOf = new Map<T, string>();

  /** At most `max` in all and `perAddress` per address. */
  constructor(max: number, perAddress: number) {
    if (!Number.isInteger(perAddress) || perAddress < 1) {
      throw new Error(`Invalid maxPendingPerAddress "${perAddress}": use an integer >= 1`);
    }
    this.#max = max;
    this.#perAddress = perAddress;
  }

  /** How many are pending. */
  get size(): number {
    return this.#addressOf.size;
  }

  /** Every pending item, oldest first. */
  all(): T[] {
    return [...this.#addressOf.keys()];
  }

  /** Adds `item` from `address`; returns the item evicted to make room, if any. */
  add(item: T, address: string): T | undefined {
    let evicted: T | undefined;
    const own = this.#byAddress.get(address);
    if (own !== undefined && own.size >= this.#perAddress) {
      evicted = first(own);
    } else if (this.size >= this.#max) {
      evicted = this.#oldestOfLargest();
    }
    if (evicted !== undefined) this.delete(evicted);
    const set = this.#byAddress.get(address) ?? new Set<T>();
    set.add(item);
    this.#byAddress.set(address, set);
    this.#addressOf.set(item, address);
    return evicted;
  }

  /** Forgets `item` (authenticated, refused or gone). */
  delete(item: T): void {
    const address = this.#addressOf.get(item);
    if (address === undefined) return;
    this.#addressOf.delete(item);
    const set = this.#byAddress.get(address);
    set?.delete(item);
    if (set?.size === 0) this.#byAddress.delete(address);
  }

  #oldestOfLargest(): T | undefined {
    let largest: Set<T> | undefined;
    for (const set of this.#byAddress.values()) {
      if (largest === undefined || set.size > largest.size) largest = set;
    }
    return largest && first(largest);
  }
}

function first<T>(set: Set<T>): T | undefined {
  for (const item of set) return item;
  return undefined;
}

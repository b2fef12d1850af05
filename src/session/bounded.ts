/** Sets `key` as the newest entry of `map`, evicting the oldest entry when `map` outgrows `maxSize`. */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, maxSize: number): void {
  map.delete(key);
  map.set(key, value);
  if (map.size > maxSize) map.delete(map.keys().next().value as K);
}

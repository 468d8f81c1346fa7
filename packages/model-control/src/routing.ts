import type { RoutingSource, Weights } from './control-store.js';

/** What routing needs to know of one version of a model. */
export interface VersionStanding {
  version: string;
  /** At least one live worker has it loaded. */
  ready: boolean;
  /** Removed or unloaded: no new jobs. */
  draining: boolean;
  /** It could not be loaded. */
  failed: boolean;
}

/**
 * The weights in effect for a model's unpinned jobs. An explicit routing
 * (admin, rollout) stays as set when versions come and go, less any version
 * that is draining or failed, or that no live worker serves while another
 * version is served (its share goes to the others, in proportion: a job
 * sent to it would be refused, 503); without one (or when nothing of it is
 * left), the highest ready version takes 100, so a new version takes
 * traffic only once a worker has it (blue, then green). With no version
 * ready anywhere (no worker alive), the routing stays as it is (or the
 * highest version that can be served takes 100), and the jobs wait for the
 * workers' return.
 */
export function effectiveRouting(explicit: Weights | null, versions: readonly VersionStanding[]): { weights: Weights; source: RoutingSource } {
  const usable = new Map(versions.filter((v) => !v.draining && !v.failed).map((v) => [v.version, v]));
  const anyReady = [...usable.values()].some((v) => v.ready);
  if (explicit) {
    const kept = Object.entries(explicit).filter(([v, w]) => w > 0 && usable.has(v) && (!anyReady || usable.get(v)!.ready));
    if (kept.length > 0) return { weights: toHundred(Object.fromEntries(kept)), source: 'explicit' };
  }
  const byNumber = [...usable.values()].sort((a, b) => Number(b.version) - Number(a.version));
  const pick = byNumber.find((v) => v.ready) ?? byNumber[0];
  return { weights: pick ? { [pick.version]: 100 } : {}, source: 'default' };
}

/**
 * Weights scaled to integers summing to `total` (largest remainder), ties to
 * the higher version. A version whose share rounds to nothing is left out.
 */
export function apportion(weights: Weights, total: number): Weights {
  const entries = Object.entries(weights).filter(([, w]) => w > 0);
  const sum = entries.reduce((a, [, w]) => a + w, 0);
  if (sum === 0 || total <= 0) return {};
  const exact = entries.map(([v, w]) => ({ v, x: (w * total) / sum }));
  const shares = new Map<string, number>();
  let given = 0;
  for (const e of exact) {
    shares.set(e.v, Math.floor(e.x));
    given += Math.floor(e.x);
  }
  const order = [...exact].sort((a, b) => b.x - Math.floor(b.x) - (a.x - Math.floor(a.x)) || Number(b.v) - Number(a.v));
  for (let i = 0; given < total; i++, given++) shares.set(order[i % order.length]!.v, shares.get(order[i % order.length]!.v)! + 1);
  return Object.fromEntries([...shares].filter(([, w]) => w > 0));
}

/** Weights scaled to integers summing to 100 (apportion). */
export const toHundred = (weights: Weights): Weights => apportion(weights, 100);

/**
 * Picks versions for a stream of jobs in exact proportion to their weights
 * (smooth weighted round-robin, as nginx balances upstreams): every 100
 * picks follow the weights exactly, interleaved, with no randomness. One per
 * model per gateway; several gateways each keep the proportion, so the
 * fleet does too.
 */
export class WeightedPicker {
  private readonly current = new Map<string, number>();
  private key = '';
  /** The weights last picked by, and what they come to: read again only when a different object is passed. */
  private weights: Weights | undefined;
  private entries: Array<[string, number]> = [];
  private total = 0;

  pick(weights: Weights): string | undefined {
    if (weights !== this.weights) this.use(weights);
    if (this.entries.length === 0) return undefined;
    let best: string | undefined;
    let bestValue = -Infinity;
    for (const [v, w] of this.entries) {
      const value = (this.current.get(v) ?? 0) + w;
      this.current.set(v, value);
      if (value > bestValue) {
        bestValue = value;
        best = v;
      }
    }
    this.current.set(best!, bestValue - this.total);
    return best;
  }

  /**
   * Give back a pick of `version` whose job was not accepted (refused, or a
   * replay of an earlier one), so that the proportion holds over the jobs
   * accepted. Picks only add to the counters, so taking one away leaves them
   * as if it had never been made, whatever was picked since.
   */
  unpick(version: string): void {
    if (!this.entries.some(([v]) => v === version)) return; // new weights since: that round is gone
    for (const [v, w] of this.entries) this.current.set(v, (this.current.get(v) ?? 0) - w);
    this.current.set(version, (this.current.get(version) ?? 0) + this.total);
  }

  /** Routing is recomputed each second: the same weights in a new object keep the round going. */
  private use(weights: Weights): void {
    this.weights = weights;
    this.entries = Object.entries(weights).filter(([, w]) => w > 0);
    this.total = this.entries.reduce((a, [, w]) => a + w, 0);
    const key = this.entries.map(([v, w]) => `${v}=${w}`).join(',');
    if (key !== this.key) {
      // New weights: start a fresh round.
      this.key = key;
      this.current.clear();
    }
  }
}

import { unavailable } from '@infer/errors';
import type { FleetView } from '@infer/fleet';

/** What the gateway asks of the fleet before queueing work for a model version. */
export type ServingCheck = Pick<FleetView, 'served'>;

/**
 * 503 `unavailable` for a version that live workers exist for but none of
 * them serves (added to the repository, and only the gateway restarted, say):
 * its jobs would wait in a queue nobody reads. A fleet with no live worker
 * at all still queues: its jobs run when the workers are back.
 */
export async function assertServed(fleet: ServingCheck | undefined, model: { name: string; version: string }): Promise<void> {
  if (!fleet || (await fleet.served(model.name, model.version))) return;
  throw unavailable(`No live worker serves model "${model.name}" version ${model.version}; try again shortly`, 5);
}

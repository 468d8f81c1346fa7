import { Router, type Request, type RequestHandler } from 'express';
import { z } from 'zod';
import { CreateRolloutBody, VERSION_RE, type ModelDescription, platformNow } from '@infer/contract';
import { AppError, badRequest, conflict, invalidInput, invalidRouting, notFound } from '@infer/errors';
import { newRolloutId, renderRollout, stepRouting, type ModelControl, type StoredRollout } from '@infer/model-control';
import type { ModelRepository } from '@infer/models';
import { firstIssue } from '../http/first-issue.js';
import { jsonBody } from '../http/json-body.js';
import type { ModelCatalog } from '../models/model-catalog.js';
import { pageLimit } from '../http/page-limit.js';

export interface ModelAdminDeps {
  catalog: ModelCatalog;
  control: ModelControl;
  repository: ModelRepository;
  /** requireAdminKey: sets req.admin, the actor of every change. */
  admin: RequestHandler;
  /** The admin's name when a request carries an admin key (adminKeyName), for the reads admins share with tenants. */
  adminOf(req: Request): string | undefined;
}

/** The admin bodies are small; this bounds what is read before they are checked. */
const ADMIN_BODY_BYTES = 64 * 1024;

const EventsQuery = z
  .object({
    limit: pageLimit,
    after: z.string().max(200).optional(),
  })
  .strict();

/**
 * Any number JSON.parse can give, ±Infinity included (1e400 is valid JSON
 * and parses as Infinity), where zod's z.number() refuses those as not
 * numbers. For the shape checks below: such a value has the right JSON
 * type, so it breaks a rule (422), not the shape (400). Not in the published
 * schemas: it has no JSON Schema form, and they say what a client sends.
 */
const jsonNumber = z.custom<number>((v) => typeof v === 'number' && !Number.isNaN(v), { message: 'expected a number' });

/** The shape of a routing body alone; the route checks the rules below (the published SetRoutingBody says both). */
const RoutingShape = z.object({ weights: z.record(z.string(), jsonNumber).nullable() }).strict();

/** The shape of a rollout's body alone (fields and their JSON types); CreateRolloutBody adds the rules. */
const RolloutShape = z
  .object({
    version: z.union([z.string(), jsonNumber]),
    steps: z.array(jsonNumber),
    step_seconds: jsonNumber,
    max_error_rate: jsonNumber.optional(),
    max_p50_latency_ratio: jsonNumber.optional(),
  })
  .strict();

/** A route parameter (Express decodes it; the router's pattern guarantees it is there). */
const param = (req: Request, key: string): string => String(req.params[key]);

function actorOf(req: Request): string {
  // requireAdminKey runs before every handler here; a missing name would be a wiring bug.
  if (!req.admin) throw new Error('admin route without requireAdminKey');
  return req.admin;
}

/**
 * The model lifecycle's admin routes, mounted on `/v1/models` ahead of the
 * tenants' routes, each behind an admin key (ADMIN_API_KEYS): routing,
 * loading and unloading versions, rollouts and the events log. Every change
 * is recorded in the model's events with the admin's name as the actor.
 */
export function modelAdminRoutes(deps: ModelAdminDeps): Router {
  const router = Router();
  const { catalog, control, repository, admin } = deps;
  const json = jsonBody(ADMIN_BODY_BYTES, { liftBase64: false });

  // An operator holding only an admin key reads models as tenants do (to watch versions change state);
  // any other key goes on to the tenants' routes.
  const adminReads: RequestHandler = (req, _res, next) => (deps.adminOf(req) === undefined ? next('router') : next());
  router.get('/', adminReads, (_req, res) => {
    res.json({ object: 'list', data: catalog.list() });
  });
  router.get('/:name', adminReads, (req, res) => {
    res.json(catalog.describe(param(req, 'name')));
  });

  /**
   * 404 model_not_found unless the repository knows the model: loaded or
   * failed, or its folder is there with every version let go (its events log
   * says why, and `…/load` takes it back).
   */
  const knownModel = (name: string) => {
    if (!repository.has(name) && !repository.hasModelFolder(name)) throw notFound('model_not_found', `No model named "${name}"`);
  };

  router.put('/:name/routing', admin, json, async (req, res) => {
    const name = param(req, 'name');
    catalog.describe(name);
    const parsed = RoutingShape.safeParse(req.body);
    if (!parsed.success) throw badRequest('invalid_input', `body: ${firstIssue(parsed.error)} (send {"weights": {"<version>": <weight>, …}} or {"weights": null})`);
    const { weights } = parsed.data;
    // zod's record leaves out a "__proto__" member (JSON.parse keeps it): it would skip every check below.
    const raw = (req.body as { weights?: unknown }).weights;
    if (weights !== null && typeof raw === 'object' && raw !== null && Object.hasOwn(raw, '__proto__')) throw invalidRouting('"__proto__" is not a version (a positive integer)');
    if (weights !== null) {
      const entries = Object.entries(weights);
      if (entries.length === 0) throw invalidRouting('weights name no version; send {"weights": null} for the default routing');
      for (const [version, w] of entries) {
        if (!VERSION_RE.test(version)) throw invalidRouting(`"${version}" is not a version (a positive integer)`);
        if (!Number.isInteger(w) || w < 0) throw invalidRouting(`the weight of version ${version} is ${w}: weights are integers from 0 to 100`);
        if (w > 0 && !catalog.isReady(name, version)) throw invalidRouting(`version ${version} of model "${name}" is not ready (no live worker has it loaded)`);
      }
      const sum = entries.reduce((a, [, w]) => a + w, 0);
      if (sum !== 100) throw invalidRouting(`weights sum to ${sum}; they must sum to 100`);
    }
    const kept = weights === null ? null : Object.fromEntries(Object.entries(weights).filter(([, w]) => w > 0));
    // Refused in the same step as the write while a rollout runs, one started a moment ago included.
    if (!(await control.setRouting(name, kept, actorOf(req)))) {
      throw conflict(`A rollout of model "${name}" is running; cancel it before setting the routing by hand`);
    }
    await catalog.refresh();
    res.json(catalog.describe(name));
  });

  router.post('/:name/versions/:version/load', admin, async (req, res) => {
    const [name, version] = [param(req, 'name'), param(req, 'version')];
    if (!repository.inFolder(name, version)) {
      knownModel(name);
      throw notFound('version_not_found', `There is no ${name}/${version}/model.onnx in the model repository`);
    }
    const draining = (await control.draining(name)).has(version);
    // A version that is serving has nothing to load: answered as it is, nothing recorded.
    if (draining) await control.undrain(name, version, actorOf(req));
    else if (!catalog.isReady(name, version)) await control.requestLoad(name, version, actorOf(req));
    await catalog.refresh({ scan: true });
    const failed = repository.failed().find((f) => f.name === name && f.version === version);
    if (failed) throw invalidInput(`Version ${version} of model "${name}" could not be loaded: ${failed.error}`);
    res.status(202).json(catalog.describe(name));
  });

  router.post('/:name/versions/:version/unload', admin, async (req, res) => {
    const [name, version] = [param(req, 'name'), param(req, 'version')];
    const model = catalog.describe(name);
    const detail = model.versions_detail.find((d) => d.version === version);
    const gone = () => notFound('version_not_found', `Model "${name}" has no version "${version}" loaded`);
    if (!detail || detail.state === 'draining') throw gone();
    // A rollback or cancel sends the traffic back to the rollout's `from`: a version of it gone by then
    // would leave its share to the default routing, which may be the very candidate judged failing.
    const running = (await control.rollouts(name)).find((r) => r.state === 'running');
    if (running && running.version !== version && (running.from.routing[version] ?? 0) > 0) {
      throw conflict(`Version ${version} of model "${name}" is in the routing its running rollout ${running.id} goes back to; cancel the rollout, or let it end, before unloading it`);
    }
    // The view above may be a second old: of two unloads at once (two admins, two gateways), the one whose mark
    // lands first is the unload; the other finds it draining already.
    if (!(await control.drain(name, version, 'unloaded', actorOf(req)))) throw gone();
    await catalog.refresh();
    res.status(202).json(describedAfterUnload(catalog, model, version));
  });

  router.post('/:name/rollouts', admin, json, async (req, res) => {
    const name = param(req, 'name');
    await catalog.refresh();
    catalog.describe(name);
    const parsed = CreateRolloutBody.safeParse(req.body);
    if (!parsed.success) {
      // As everywhere in the API: a body of the wrong shape is 400, values that break a rule are 422.
      const shape = RolloutShape.safeParse(req.body);
      if (!shape.success) throw badRequest('invalid_input', `body: ${firstIssue(shape.error)}`);
      throw invalidInput(`body: ${firstIssue(parsed.error)}`);
    }
    const body = parsed.data;
    // The start is written only if the routing is still the one it starts from (and goes back to); another
    // admin's change landing in between (through any gateway) sends it back to read the routing again.
    for (let attempt = 0; attempt < 5; attempt++) {
      // The routing in effect now: a change made through another gateway a moment ago included, which this
      // gateway's view (read once a second) may not have yet.
      if (attempt > 0) await catalog.refresh();
      const model = catalog.describe(name);
      if (!catalog.isReady(name, body.version)) throw invalidRouting(`version ${body.version} of model "${name}" is not ready (no live worker has it loaded)`);
      if (model.routing[body.version] === 100) throw invalidRouting(`version ${body.version} already takes all of model "${name}"'s traffic`);
      const now = platformNow();
      const rollout: StoredRollout = {
        id: newRolloutId(),
        model: name,
        version: body.version,
        from: { routing: model.routing, routing_source: model.routing_source },
        steps: body.steps,
        step_seconds: body.step_seconds,
        max_error_rate: body.max_error_rate,
        max_p50_latency_ratio: body.max_p50_latency_ratio,
        step: 0,
        state: 'running',
        started_at: now,
        step_started_at: now,
        ended_at: null,
        reason: null,
      };
      const started = await control.startRollout(rollout, stepRouting(rollout, body.steps[0]!), actorOf(req), catalog.storedRouting(name));
      if (started === 'running') throw conflict(`A rollout of model "${name}" is already running; one model has one rollout at a time`);
      if (started === 'started') {
        await catalog.refresh();
        res.status(201).json(renderRollout(rollout));
        return;
      }
    }
    throw conflict(`The routing of model "${name}" kept changing while the rollout started; retry`);
  });

  router.get('/:name/rollouts', admin, async (req, res) => {
    const name = param(req, 'name');
    knownModel(name);
    res.json({ object: 'list', data: (await control.rollouts(name)).map(renderRollout) });
  });

  router.get('/:name/rollouts/:id', admin, async (req, res) => {
    const [name, id] = [param(req, 'name'), param(req, 'id')];
    knownModel(name);
    const r = await control.rollout(name, id);
    if (!r) throw notFound('not_found', `Model "${name}" has no rollout "${id}"`);
    res.json(renderRollout(r));
  });

  router.post('/:name/rollouts/:id/cancel', admin, async (req, res) => {
    const [name, id] = [param(req, 'name'), param(req, 'id')];
    knownModel(name);
    // A step may move the rollout between the read and the write: read again and retry.
    for (let attempt = 0; attempt < 5; attempt++) {
      const r = await control.rollout(name, id);
      if (!r) throw notFound('not_found', `Model "${name}" has no rollout "${id}"`);
      if (r.state !== 'running') throw conflict(`Rollout "${id}" has ended (${r.state})`);
      const actor = actorOf(req);
      const next: StoredRollout = { ...r, state: 'canceled', ended_at: platformNow(), reason: `canceled by ${actor}` };
      const back = r.from.routing_source === 'default' ? 'default' : r.from.routing;
      if (await control.moveRollout(r, next, back, actor, 'rollout_canceled', { rollout: r.id, version: r.version, step: r.step, weights: r.from.routing })) {
        await catalog.refresh();
        res.json(renderRollout(next));
        return;
      }
    }
    throw conflict(`Rollout "${id}" kept moving; try again`);
  });

  router.get('/:name/events', admin, async (req, res) => {
    const name = param(req, 'name');
    knownModel(name);
    const q = EventsQuery.safeParse(req.query);
    if (!q.success) throw badRequest('invalid_input', `query string: ${firstIssue(q.error)}`);
    const page = await control.events(name, q.data.limit, q.data.after);
    if (!page) throw badRequest('invalid_input', `query string: after: no event "${q.data.after}" in model "${name}"'s events`);
    res.json({ object: 'list', data: page.data, has_more: page.hasMore });
  });

  return router;
}

/**
 * The model as an unload leaves it. With no live worker, a gateway lets go
 * of a drained version at once, and of the model with its last version: it
 * is then described as it was, the version draining, rather than answered
 * 404 for an unload that was done.
 */
function describedAfterUnload(catalog: ModelCatalog, before: ModelDescription, version: string): ModelDescription {
  try {
    return catalog.describe(before.name);
  } catch (err) {
    if (!(err instanceof AppError && err.code === 'model_not_found')) throw err;
    return {
      ...before,
      versions: before.versions.filter((v) => v !== version),
      versions_detail: before.versions_detail.map((d) => (d.version === version ? { ...d, state: 'draining' } : d)),
    };
  }
}

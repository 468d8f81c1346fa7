import { Router } from 'express';
import type { ModelCatalog } from '../models/model-catalog.js';

/** The tenants' view of the models: what they can call, with each version's state and the routing in effect. */
export function modelRoutes(catalog: ModelCatalog): Router {
  const router = Router();
  router.get('/', (_req, res) => {
    res.json({ object: 'list', data: catalog.list() });
  });
  router.get('/:name', (req, res) => {
    res.json(catalog.describe(req.params.name));
  });
  return router;
}

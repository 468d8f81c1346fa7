import { Router } from 'express';
import type { ModelRepository } from '@infer/models';

export function modelRoutes(models: ModelRepository): Router {
  const router = Router();
  router.get('/', (_req, res) => {
    res.json({ object: 'list', data: models.list() });
  });
  router.get('/:name', (req, res) => {
    res.json(models.info(req.params.name));
  });
  return router;
}

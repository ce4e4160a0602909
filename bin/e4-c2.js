#!/usr/bin/env node
// The e4-c2 command after `npm install`: the C2's command line is TypeScript (host-sim/c2/cli.ts),
// run through the tsx loader, registered here because an npm bin cannot pass node options.
import { register } from 'tsx/esm/api';

register();
await import('../host-sim/c2/cli.ts');

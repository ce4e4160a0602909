/**
 * Walking acorn's ESTree nodes without a visitor per node type: the image checks
 * (build/check.ts), the snapshot literal rewrite (build/jerry-snapshot.ts) and the parameter
 * rewrite (build/unwrap.ts) each look at a few node types and only need every node reached.
 */
import type { AnonymousFunctionDeclaration, AnyNode, FunctionDeclaration, FunctionExpression } from 'acorn';

/** True for an ESTree node (an object with a string `type`), not a location, regex or value. */
export function isNode(value: unknown): value is AnyNode {
  return typeof value === 'object' && value !== null && 'type' in value && typeof value.type === 'string';
}

/** The nodes directly below `node`, field by field in the order acorn set them. */
export function childNodes(node: AnyNode): AnyNode[] {
  const out: AnyNode[] = [];
  const values: unknown[] = Object.values(node);
  for (const value of values) {
    if (Array.isArray(value)) {
      const items: unknown[] = value;
      for (const item of items) if (isNode(item)) out.push(item);
    } else if (isNode(value)) out.push(value);
  }
  return out;
}

/** A function node: declared (named or not) or an expression. */
export type FunctionNode = FunctionDeclaration | AnonymousFunctionDeclaration | FunctionExpression;

export function isFunction(node: AnyNode): node is FunctionNode {
  return node.type === 'FunctionDeclaration' || node.type === 'FunctionExpression';
}

/**
 * The part of terser's AST (terser lib/ast.js, lib/scope.js: the tree `minify` returns with the
 * format option `ast`) that build/unwrap.ts reads and edits. terser's .d.ts declares no AST, so
 * these interfaces name the fields unwrap.ts relies on; `isAst` checks a node's TYPE before its
 * fields are used, as terser's own code does.
 */
import type { FormatOptions } from 'terser';

/** Any node: its TYPE is the name of its AST_ class without the prefix ("Var", "SymbolRef", ...). */
export interface AstNode {
  TYPE: string;
  walk(visitor: AstVisitor): void;
  print_to_string(format?: FormatOptions): string;
}

/** A walker's visitor: called on every node; `descend` (absent on leaves) walks the children. */
export interface AstVisitor {
  _visit(node: AstNode, descend?: (this: AstNode) => void): void;
}

/** One declared (or global) name of a scope; `mangled_name` is the name it prints as when set. */
export interface SymbolDef {
  name: string;
  mangled_name: string | null;
  scope: AstNode;
  orig: AstSymbol[];
}

/** Any AST_Symbol (TYPE "Symbol…"): a declaration or a reference. */
export interface AstSymbol extends AstNode {
  name: string;
  thedef?: SymbolDef;
}

export interface AstToplevel extends AstNode {
  body: AstNode[];
}
export interface AstVar extends AstNode {
  definitions: AstVarDef[];
}
export interface AstVarDef extends AstNode {
  name: AstSymbol;
  value: AstNode | null;
}
export interface AstCall extends AstNode {
  expression: AstNode;
  args: AstNode[];
}
export interface AstFunction extends AstNode {
  argnames: AstSymbol[];
  body: AstNode[];
  /** name -> definition, for every variable and function the function declares */
  variables: Map<string, SymbolDef>;
}
export interface AstObject extends AstNode {
  properties: AstNode[];
}
export interface AstObjectKeyVal extends AstNode {
  key: string | AstNode;
}
export interface AstReturn extends AstNode {
  value: AstNode | null;
}
export interface AstAssign extends AstNode {
  left: AstNode;
}
export interface AstUnary extends AstNode {
  operator: string;
  expression: AstNode;
}
export interface AstDot extends AstNode {
  property: string | AstNode;
}

/** The node interface of each TYPE unwrap.ts looks into. */
interface AstTypes {
  Toplevel: AstToplevel;
  Var: AstVar;
  Call: AstCall;
  Function: AstFunction;
  Object: AstObject;
  ObjectKeyVal: AstObjectKeyVal;
  Return: AstReturn;
  SymbolRef: AstSymbol;
  Assign: AstAssign;
  UnaryPrefix: AstUnary;
  UnaryPostfix: AstUnary;
  Dot: AstDot;
  Number: AstNode;
}

/** True when `node` is a node of that TYPE. */
export function isAst<K extends keyof AstTypes>(node: AstNode | null | undefined, type: K): node is AstTypes[K] {
  return !!node && node.TYPE === type;
}

/** True for any symbol node (AST_Symbol and its subclasses: TYPE "Symbol…"). */
export function isSymbol(node: AstNode): node is AstSymbol {
  return node.TYPE.startsWith('Symbol');
}

/** True for the tree `minify` returns with the format option `ast` (an AST_Toplevel). */
export function isToplevel(value: unknown): value is AstToplevel {
  return typeof value === 'object' && value !== null && 'TYPE' in value && value.TYPE === 'Toplevel';
}

/**
 * Failure messages and stack traces go through the payload codec too: with
 * `encodeCommonAttributes`, the SDK moves them into `Failure.encodedAttributes` (a payload the
 * codec seals) and stores only "Encoded failure" in plain text.
 *
 * Workers load this module by path (`dataConverter.failureConverterPath`) inside the workflow
 * sandbox as well, so it imports nothing but `@temporalio/common`.
 */
import { DefaultFailureConverter } from '@temporalio/common';

export const failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });

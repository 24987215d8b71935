/** Activities of the demo workflow. Their arguments and results are sealed by kmscodec. */
import { ApplicationFailure } from '@temporalio/common';

/** Returns a greeting for `name`. */
export async function composeGreeting(name: string): Promise<string> {
  return `Hello, ${name}!`;
}

/** Always fails: its message (which names the card) must be stored sealed, not in plain text. */
export async function chargeCard(card: string): Promise<string> {
  throw ApplicationFailure.create({ message: `card ${card} was declined`, type: 'CardDeclined' });
}

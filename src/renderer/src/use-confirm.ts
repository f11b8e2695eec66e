/** A destructive button that asks first (History's Clear, Trace's Clear): the question takes the focus on its safe answer, and gives it back to the button once answered. */
import { nextTick, ref } from 'vue';

export function useConfirm(act: () => Promise<void>) {
  const asking = ref(false);
  /** bind to the button that asks (ref="...") */
  const askButton = ref<HTMLButtonElement | null>(null);
  /** bind to the safe answer */
  const keepButton = ref<HTMLButtonElement | null>(null);
  async function ask(): Promise<void> {
    asking.value = true;
    await nextTick();
    keepButton.value?.focus();
  }
  async function keep(): Promise<void> {
    asking.value = false;
    await nextTick();
    askButton.value?.focus();
  }
  async function confirm(): Promise<void> {
    await act();
    await keep();
  }
  return { asking, askButton, keepButton, ask, keep, confirm };
}
